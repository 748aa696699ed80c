// ArtPlayer's danmuku plugin (artplayer-plugin-danmuku 5.x) sending on a
// broadcast's recording through our API. A site loads this next to the player
// (reading the broadcast's /api/v1/broadcasts/{id}/danmaku.xml) and writes:
//
//   const art = new Artplayer({container, url, plugins: [artplayerPluginDanmuku({
//     danmuku: "https://danmaku.example/api/v1/broadcasts/7/danmaku.xml",
//     beforeEmit: DanmakuArtplayer.beforeEmit({
//       origin: "https://danmaku.example", broadcast: 7, token,
//       onError: (message) => { art.notice.show = message; },
//     }),
//   })]});
//
// The plugin never talks to a server: its send box hands beforeEmit
// {text, mode, color, time} and shows the comment only if that resolves to
// true. So true means our server kept it (201); anything else leaves the text
// in the box for the viewer to change or send again. The plugin shows nothing
// itself when we refuse, hence onError (console.warn without it).
//
// `token` is a player token (manage.py issue_token --scope player), or a
// function giving one (it may return a Promise), read at each send. The
// site's origin must be in the server's DANMAKU_CORS_ORIGINS.
(function (root) {
  "use strict";

  // The plugin keeps its box disabled while beforeEmit is pending: never wait forever.
  const REQUEST_TIMEOUT_MS = 10000;
  // The plugin's modes: 0 scroll, 1 top, 2 bottom (its option.mode).
  const MODES = ["scroll", "top", "bottom"];

  // The plugin's palette is upper case ("#FE0302"); a site's own COLOR list
  // may use the short form. Anything else goes as is and the server says why not.
  function hexColor(color) {
    const value = String(color || "#ffffff").trim().toLowerCase();
    const short = /^#([0-9a-f])([0-9a-f])([0-9a-f])$/.exec(value);
    return short ? "#" + short[1] + short[1] + short[2] + short[2] + short[3] + short[3] : value;
  }

  // crypto.randomUUID exists on secure pages only; a player may be on plain http.
  function newClientId() {
    const bytes = new Uint8Array(16);
    crypto.getRandomValues(bytes);
    return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  }

  function beforeEmit({origin, broadcast, token, onError = null}) {
    const url = origin.replace(/\/+$/, "") + "/api/v1/broadcasts/" + encodeURIComponent(broadcast) + "/danmaku";
    // A send whose fate we never learned (no answer, or a gateway's 5xx) may
    // have been kept: sending the same text again reuses its client_id, so the
    // server answers with the first copy instead of storing a second. Any
    // answer from our app is final for its id (it remembers even a 202).
    let unsure = null; // {text, clientId}

    function refuse(message, status, danmu) {
      if (onError) {
        try {
          onError(message, {status, danmu});
        } catch (error) {
          console.warn("danmaku: onError failed", error);
        }
      } else {
        console.warn("danmaku: " + message);
      }
      return false;
    }

    // Never rejects: the plugin logs a rejection as an error and shows nothing anyway.
    return async function (danmu) {
      const text = String(danmu.text);
      const clientId = unsure && unsure.text === text ? unsure.clientId : newClientId();
      const body = {
        text,
        color: hexColor(danmu.color),
        mode: MODES[danmu.mode] || "scroll",
        progress_ms: Math.max(0, Math.round((Number(danmu.time) || 0) * 1000)),
        client_id: clientId,
      };
      let bearer;
      try {
        bearer = typeof token === "function" ? await token() : token;
      } catch (error) {
        return refuse("sending failed: no token (" + error + ")", 0, danmu);
      }
      unsure = null;
      const controller = new AbortController();
      const abort = setTimeout(() => controller.abort(), REQUEST_TIMEOUT_MS);
      let response, answer;
      try {
        response = await fetch(url, {
          method: "POST",
          headers: {"Content-Type": "application/json", Authorization: "Bearer " + bearer},
          body: JSON.stringify(body),
          credentials: "omit",
          signal: controller.signal,
        });
        answer = await response.json().catch(() => ({}));
      } catch (error) {
        unsure = {text, clientId};
        return refuse("sending failed: the danmaku server cannot be reached", 0, danmu);
      } finally {
        clearTimeout(abort);
      }
      if (response.status === 201) return true;
      if (response.status >= 500) unsure = {text, clientId};
      if (response.status === 202) {
        // On a recording the room's cap for this second dropped it: nothing was kept.
        return refuse("the room is busy: your comment was not kept, send it again", 202, danmu);
      }
      return refuse(answer.detail || "sending failed (" + response.status + ")", response.status, danmu);
    };
  }

  root.DanmakuArtplayer = {beforeEmit};
})(typeof window !== "undefined" ? window : globalThis);
