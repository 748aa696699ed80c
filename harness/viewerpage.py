"""What the real viewer page showed, and when, recorded inside the page.

``RECORDER_SCRIPT`` (given to Playwright's ``add_init_script`` before the
page loads) watches the page's own DOM, nothing of its code: every comment
placed on the stage (its id, when it appeared and when it left) and every
change of the connection badge (``#conn``: "live" after each answer,
"reconnecting in N s…" after each failure, with its state). Times are the
page's ``Date.now()``, the same wall clock as ``time.time()`` here.
``page_record(page)`` reads it back.

A comment element is appended hidden, measured, then placed or removed in
the same task (overlay.js ``place``); the observer runs after that task, so
it counts a comment only once it is placed and visible.
"""

from __future__ import annotations

from dataclasses import dataclass

RECORDER_SCRIPT = """
(() => {
  const record = {shown: [], conn: []};
  window.__viewerRecord = record;
  const observer = new MutationObserver((mutations) => {
    const now = Date.now() / 1000;
    for (const mutation of mutations) {
      const target = mutation.target;
      if (target.id === "conn") {
        record.conn.push([now, target.dataset.state || "", target.textContent]);
        continue;
      }
      if (target.id !== "stage") continue;
      for (const node of mutation.addedNodes) {
        if (node.nodeType !== 1 || !node.classList.contains("dm") || !node.isConnected) continue;
        if (node.style.visibility === "hidden" || node.__shownAt) continue;
        node.__shownAt = now;
        node.__entry = [Number(node.dataset.id), now, null, node.classList.contains("mine")];
        record.shown.push(node.__entry);
      }
      for (const node of mutation.removedNodes) if (node.__entry) node.__entry[2] = now;
    }
  });
  observer.observe(document, {childList: true, subtree: true, characterData: true});
})();
"""


@dataclass(frozen=True)
class Shown:
    id: int
    at: float
    left: float | None  # None: still on screen


@dataclass(frozen=True)
class PageRecord:
    shown: list[Shown]
    # (when, state, text) per change of the connection badge.
    conn: list[tuple[float, str, str]]

    def intervals(self, end: float) -> list[tuple[float, float]]:
        return [(item.at, item.left if item.left is not None else end) for item in self.shown]


def page_record(page) -> PageRecord:
    raw = page.evaluate("() => window.__viewerRecord")
    shown = [Shown(int(entry[0]), entry[1], entry[2]) for entry in raw["shown"] if not entry[3]]
    return PageRecord(shown, [tuple(change) for change in raw["conn"]])
