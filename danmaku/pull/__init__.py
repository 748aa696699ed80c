"""The pull path, in the order a pull passes through it.

- ``fastpath``: a thin WSGI layer that answers plain pulls for active rooms
  before Django sees them (the ninja endpoint, ``danmaku.api.pull``, answers
  the rest);
- ``cache``: rooms -> ring views -> shared, memoized answers (no Django);
- ``response``: an answer as HTTP (status line, headers, body per encoding),
  built once and shared by every request that gets it;
- ``wire``: the cursor codec and the columnar JSON encoder (no Django);
- ``ringbuffer``: each room's 60 one-second slots (no Django).

Nothing here reads the database or the store: ``danmaku.refresher`` is the
rings' only writer, and ``danmaku.runtime`` wires a process's cache, its
refresher and the fast path together.
"""
