// The viewer's own settings (pause, opacity, density, hidden words), kept
// in localStorage so they survive a reload and apply to every room.

const KEY = "danmaku.viewer";
const MAX_WORDS = 100;

function load() {
  try { return JSON.parse(localStorage.getItem(KEY)) || {}; } catch (error) { return {}; }
}

export function wireControls(overlay, poller) {
  const prefs = Object.assign({opacity: 100, density: 0, blocked: []}, load());
  const save = () => { try { localStorage.setItem(KEY, JSON.stringify(prefs)); } catch (error) { /* private mode */ } };
  const paused = document.getElementById("paused");
  const opacity = document.getElementById("opacity");
  const density = document.getElementById("density");
  const list = document.getElementById("blocklist");

  // Pausing is per visit, like the video's own pause: not saved.
  paused.addEventListener("change", () => {
    overlay.setPaused(paused.checked);
    if (!paused.checked) poller.resume();
  });

  opacity.value = prefs.opacity;
  overlay.setOpacity(prefs.opacity);
  opacity.addEventListener("input", () => { prefs.opacity = Number(opacity.value); overlay.setOpacity(prefs.opacity); save(); });

  density.value = String(prefs.density);
  overlay.setDensity(prefs.density);
  density.addEventListener("change", () => { prefs.density = Number(density.value); overlay.setDensity(prefs.density); save(); });

  const render = () => {
    overlay.setBlocked(prefs.blocked);
    list.replaceChildren(...prefs.blocked.map((word) => {
      const item = document.createElement("li"), label = document.createElement("span");
      const remove = document.createElement("button");
      label.textContent = word;
      remove.type = "button";
      remove.textContent = "×";
      remove.setAttribute("aria-label", "Show comments containing " + word + " again");
      remove.addEventListener("click", () => { prefs.blocked = prefs.blocked.filter((w) => w !== word); save(); render(); });
      item.append(label, remove);
      return item;
    }));
  };
  document.getElementById("block").addEventListener("submit", (event) => {
    event.preventDefault();
    const input = document.getElementById("blockword"), word = input.value.trim();
    if (word && !prefs.blocked.includes(word) && prefs.blocked.length < MAX_WORDS) prefs.blocked.push(word);
    input.value = "";
    save();
    render();
  });
  render();
}
